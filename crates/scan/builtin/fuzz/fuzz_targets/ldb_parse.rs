//! Fuzz the `.ldb` parser and evaluator: the first line of the input is a
//! logical signature, the rest an object to scan with it. Parsing must
//! never panic; a signature that loads must evaluate without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_builtin::ldb::{self, LdbSet, ObjectView, tdb::Placement};
use moat_builtin::ndb::NdbSet;
use moat_core::Blob;

fuzz_target!(|input: &[u8]| {
    let (line, data) = match input.iter().position(|&b| b == b'\n') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[][..]),
    };
    let Ok(c) = ldb::compile_line(line, 0) else {
        return;
    };
    let mut sigs = Vec::new();
    let set = LdbSet::build(vec![c], &mut sigs);
    let ndb = NdbSet::build(sigs);
    let Ok(st) = ndb.scan_slice_state(data, None) else {
        return;
    };
    let blob = Blob::from_vec(data.to_vec());
    let view = ObjectView {
        blob: &blob,
        head: &data[..data.len().min(1024)],
        exe: None,
        place: Placement::default(),
    };
    let _ = set.evaluate(&st.hits, &view, None);
});
