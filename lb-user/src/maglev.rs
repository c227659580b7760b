//! Maglev lookup tables (being written).
