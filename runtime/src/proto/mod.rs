//! The tunnel wire protocol (see `runtime/PROTOCOL.md`): framing, the hello handshake, control
//! messages and the stream metadata headers. Everything here is IO-free except the two small
//! async helpers in [`frame`], so it can be unit-tested and fuzzed without sockets.

pub mod control;
pub mod frame;
pub mod hello;
pub mod meta;

/// The tunnel protocol version spoken by this build.
pub const PROTOCOL_VERSION: u16 = 1;

/// Initial per-stream HTTP/2 flow-control window on the tunnel (design §5.1).
pub const STREAM_WINDOW: u32 = 1024 * 1024;
/// Initial connection-level HTTP/2 window on the tunnel.
pub const CONN_WINDOW: u32 = 8 * 1024 * 1024;
/// Largest HTTP/2 frame payload each end of the tunnel accepts (`SETTINGS_MAX_FRAME_SIZE`).
///
/// Perf: at the default 16 KiB a 1 MiB body crossed the tunnel as 64 DATA frames, each its own
/// TLS write and `sendmsg`; at 256 KiB it is four, each written as 16 TLS records in one
/// `writev`. Larger frames would hold other streams' frames back for longer.
pub const MAX_FRAME_SIZE: u32 = 256 * 1024;
