//! What every part of the medallion host shares and nothing else: calendar
//! dates ([`date`]), stopping on Ctrl-C ([`cancel`]), progress of long work
//! ([`progress`]), N workers over a list of jobs ([`work`]) and "did you
//! mean" ([`suggest`]), a run's scratch folder ([`scratch`]), the process's
//! peak memory ([`memory`]), and faults tests inject ([`faults`]).
//!
//! Not for: anything that knows about plugins, the lake, a pipeline or a
//! store. This crate is the bottom layer; it depends on no other of ours.

pub mod cancel;
pub mod date;
pub mod faults;
pub mod memory;
pub mod progress;
pub mod scratch;
pub mod suggest;
pub mod work;
