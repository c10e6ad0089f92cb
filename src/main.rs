//! burrow: a BitTorrent client in which a peer behind a NAT stays a full member of the swarm.

mod cli;
mod daemon;

use clap::Parser;

/// Keeps freed buffers of up to 4 MiB in the allocator instead of handing them back to the
/// kernel. Each connection's receive buffer is 256 KiB and is released once the blocks read
/// into it are copied into their pieces; returned to the kernel, every new one would cost a
/// page fault per 4 KiB on the next read, which at full speed was a third of the system time.
/// The `MALLOC_MMAP_THRESHOLD_` and `MALLOC_TRIM_THRESHOLD_` environment variables still win.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
            unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20) };
        }
        if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
            // SAFETY: as above.
            unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20) };
        }
    }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    let args = cli::Cli::parse();
    cli::init_tracing(args.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(cli::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
