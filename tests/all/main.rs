//! The end-to-end suite: one test binary, one module per concern.

mod cli;
mod faults;
mod lake;
mod pipeline;
mod plugin;
mod tidy;
mod util;
