//! vmove-runtime
