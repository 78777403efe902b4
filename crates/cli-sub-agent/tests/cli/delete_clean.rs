//! `csa session delete` and `csa session clean` (tests to come with the commands).
