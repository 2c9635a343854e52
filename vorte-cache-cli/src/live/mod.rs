//! The live commands, `stats`, `tail` and `top` (`docs/cli.md#stats`, `#tail`, `#top`).
//!
//! A CLI process has a cache of its own ([`local`]): its counters say nothing of the services'
//! hits. So each command shows what this process can see for itself (keys and bytes held, a
//! probe of each layer, the bus), and, with `--url`, what running services report on their
//! `/stats` route ([`remote`]); both become the same [`view::SourceView`].

mod local;
mod remote;
mod stats;
mod table;
mod tail;
mod top;
mod view;

pub(crate) use stats::{StatsArgs, stats};
pub(crate) use tail::{TailArgs, tail};
pub(crate) use top::{TopArgs, top};
