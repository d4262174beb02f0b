//! pgmon's user interface pieces: page layout, maud views of every page and the static assets embedded in the binary.

pub mod activity;
pub mod alerts;
pub mod assets;
pub mod components;
pub mod connections;
pub mod fleet;
pub mod health;
pub mod layout;
pub mod locks;
pub mod objects;
pub mod sign_in;
pub mod statements;
