//! The commands behind the CLI, other than `sql` (which is the session's
//! own): `gen`, `inspect` and `demo`. The binary only parses arguments and
//! calls these.

pub mod demo;
pub mod gen;
pub mod inspect;
