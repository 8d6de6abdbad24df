//! All integration tests, in one test binary to cut link time.

mod architecture;
mod cli;
mod common;
mod hostile;
mod profiles;
mod rewrite;
mod verify;
