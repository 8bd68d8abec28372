//! The `host` binary: parses the command line and hands over to [`cli`].

mod cli;

#[global_allocator]
static ALLOCATOR: polars_ooc::Allocator = polars_ooc::Allocator;

fn main() -> std::process::ExitCode {
    cli::main()
}
