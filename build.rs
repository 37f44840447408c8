//! Rebuilds the crate when a migration is added. `sqlx::migrate!` embeds `migrations/` at compile
//! time, and on stable Rust Cargo reruns the macro only when a file it already knows changes: a new
//! migration file went unnoticed, and the binary went on migrating to the previous schema. This is
//! the build script sqlx's documentation recommends.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
