//! All integration tests, in one test binary to cut link time.

mod architecture;
mod cli;
mod cli_output;
mod common;
mod float16;
mod hostile;
mod interrupt;
mod multi_pose_cli;
mod multi_pose_graph;
mod multi_pose_reference;
mod pixels;
mod profiles;
mod rewrite;
mod tfjs;
mod verify;
