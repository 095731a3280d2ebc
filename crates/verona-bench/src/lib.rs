//! verona-bench: an XMPP load generator. It speaks plain RFC 6120 client streams, so the same
//! scenarios run against Verona, Prosody or ejabberd. The `verona-bench` binary is a thin
//! command line over [`scenarios`], [`wire`], [`summary`], [`populate`] (which writes a
//! Verona account database for the scale scenario) and [`commits`] (the store's commit latency).

pub mod client;
pub mod commits;
pub mod handshake;
pub mod populate;
pub mod scenarios;
pub mod stats;
pub mod stream;
pub mod summary;
pub mod wire;

/// Raises this process's soft limit on open files to the hard limit, so thousands of client
/// sockets fit; returns the new soft limit.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls only read or write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}
