//! vmove-journal
