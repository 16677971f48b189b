//! moat-notify: telling others about results (webhook, AMQP, NATS).
#![forbid(unsafe_code)]
