//! The XDP filter: the C program under `xdp/`, its committed object, and the aya loader.
