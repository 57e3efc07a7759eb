//! Suffix-array span attribution (being written).
