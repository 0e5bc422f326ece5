//! The AWS side of the test kit (feature `aws`).

pub mod emulator;
pub mod gateway;
pub mod lambda;
pub mod runtime_api;
