//! Helpers shared by the integration tests (`mod common;` in each test crate).

// Each test crate uses only part of these helpers; the rest would warn.
#![allow(dead_code, unused_imports)]

pub mod blocking;
pub mod certs;
pub mod process;
pub mod streams;
pub mod tcp;
pub mod users;
pub mod vectors;
pub mod watchdog;
