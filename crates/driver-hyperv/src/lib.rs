//! vmove-driver-hyperv
