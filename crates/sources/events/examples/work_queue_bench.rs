//! Work-queue throughput (the portal's job queue): `JOBS` jobs enqueued one
//! after another (each committed before the next), then leased and acked by
//! `WORKERS` concurrent workers, on the embedded SQLite queue, RabbitMQ and
//! NATS JetStream. Prints jobs/s for each phase.
//!
//!   cargo run --release --example work_queue_bench -- [JOBS] [WORKERS]
//!
//! Brokers: `MOAT_TEST_AMQP_URL` and `MOAT_TEST_NATS_URL` (scripts/test-deps.sh;
//! defaults 127.0.0.1); a backend that cannot be reached is skipped. Each run
//! uses fresh queue names and deletes them at the end.

use moat_db::EventQueue;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

async fn run(name: &str, q: Arc<dyn EventQueue>, jobs: usize, workers: usize) {
    let queue = "bench";
    let payload = br#"{"file":"0192f0c4-7d4e-7a55-9d0c-3f6b2b8e1c11"}"#;
    let t = Instant::now();
    for _ in 0..jobs {
        if let Err(e) = q.enqueue(queue, payload).await {
            println!("{name}: enqueue failed: {e}");
            return;
        }
    }
    let enq = t.elapsed();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while let Ok(Some(e)) = q.lease(queue, Duration::from_secs(300)).await {
                if q.ack(&e.id).await.is_err() {
                    break;
                }
                n += 1;
            }
            n
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await.unwrap_or(0);
    }
    let work = t.elapsed();
    println!(
        "{name:<10} enqueue {:>8.0} jobs/s   lease+ack ({workers} workers) {:>8.0} jobs/s   ({done}/{jobs} done)",
        jobs as f64 / enq.as_secs_f64(),
        done as f64 / work.as_secs_f64(),
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let workers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    let n = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let prefix = format!("moat-bench-{}-{n}.", std::process::id());
    println!("{jobs} jobs, {workers} workers");

    let dir = std::env::temp_dir().join(format!("moat-queue-bench-{n}"));
    let _ = std::fs::create_dir_all(&dir);
    let url = format!("sqlite://{}/q.db", dir.display());
    match moat_db::open_queue(&url).await {
        Ok(q) => run("sqlite", q, jobs, workers).await,
        Err(e) => println!("sqlite: {e}"),
    }
    let _ = std::fs::remove_dir_all(&dir);

    let amqp = std::env::var("MOAT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    match moat_events::queue::open(Some(&amqp), &prefix, "unused").await {
        Ok(q) => {
            run("rabbitmq", q, jobs, workers).await;
            if let Ok(conn) = lapin::Connection::connect(&amqp, Default::default()).await
                && let Ok(ch) = conn.create_channel().await
            {
                let main = format!("{prefix}bench");
                let mut names = vec![main.clone(), format!("{main}.dead")];
                for l in [100, 400, 1_600, 6_400, 25_600, 102_400, 409_600, 1_638_400] {
                    names.push(format!("{main}.delay.{l}"));
                }
                for q in names {
                    let _ = ch.queue_delete(q.as_str().into(), Default::default()).await;
                }
            }
        }
        Err(e) => println!("rabbitmq: skipped ({e})"),
    }
    let nats =
        std::env::var("MOAT_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    match moat_events::queue::open(Some(&nats), &prefix, "unused").await {
        Ok(q) => {
            run("nats", q, jobs, workers).await;
            if let Ok(c) = async_nats::connect(nats.as_str()).await {
                let js = async_nats::jetstream::new(c);
                let stream: String = format!("{prefix}bench")
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                let _ = js.delete_stream(&stream).await;
                let _ = js.delete_stream(format!("{stream}_dead")).await;
            }
        }
        Err(e) => println!("nats: skipped ({e})"),
    }
}
