//! The MSE/PE handshake cores fed arbitrary peer streams, and run against each other under
//! fuzzed pads, policies, chunking and a corrupted byte (see swarm/tests/support/mse_exercise.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../../swarm/tests/support/mse_exercise.rs"]
mod mse_exercise;

fuzz_target!(|data: &[u8]| mse_exercise::exercise(data));
