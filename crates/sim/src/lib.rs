//! vmove-sim
