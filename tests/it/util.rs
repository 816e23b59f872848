//! The test kit (`sundial-testkit`), as `crate::util` for the tests of
//! this binary.

pub(crate) use sundial_testkit::*;
