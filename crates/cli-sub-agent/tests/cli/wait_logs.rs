//! `csa session wait` and `csa session logs` (tests to come with the commands).
