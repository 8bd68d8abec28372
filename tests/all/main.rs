//! The end-to-end suite: one test binary, one module per concern.

mod api;
mod cli;
mod delta;
mod faults;
mod gold;
mod kills;
mod lake;
mod pipeline;
mod plugin;
mod python;
mod readme;
mod silver;
mod tidy;
mod ui;
mod util;
