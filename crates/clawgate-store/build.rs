//! `sqlx::migrate!()` embeds the migration files at compile time; tell Cargo to rebuild
//! when one is added or edited, or the binary would silently keep the old schema.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=migrations-postgres");
}
