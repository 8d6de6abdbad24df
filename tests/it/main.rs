//! All integration tests, in one test binary to cut link time.

mod cli;
mod common;
mod hostile;
mod profiles;
mod rewrite;
mod verify;
