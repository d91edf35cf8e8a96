//! sensor-sim: a replay written to a file (`replay_file`); and against real servers, the
//! OpenAQ live client against a local HTTP server that answers as the API v3 documents (with
//! pages, a 429, a 500, a timeout and a malformed body), publishing to a topic of its own on
//! the stack's broker; `send`, lines published as they are.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod openaq;
mod replay_file;
mod send;
