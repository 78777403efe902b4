//! Integration tests of csa-terminal on real pseudo-terminals with real programs: a supervisor
//! process serves a full-screen program, clients attach from their own pseudo-terminals
//! (expectrl), and the tests read the clients' screens through a vt100 model.

mod harness;

mod fullscreen;
mod in_process;
mod programs;
mod restore;
mod writers;
