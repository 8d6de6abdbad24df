//! Generators for tests, benchmarks, examples and fuzzing: synthetic PoseNet-shaped models and a
//! seeded random number generator. Compiled only with the `testing` feature, which the crate's
//! own tests, benches and examples turn on (a dev-dependency on itself); the product never
//! carries them.

pub mod synthetic;

pub use crate::rng;
