//! pgmon's user interface pieces: page layout, maud components and the static assets embedded in the binary.

pub mod assets;
pub mod components;
pub mod layout;
