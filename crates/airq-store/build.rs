// `sqlx::migrate!` embeds ../../migrations at compile time: rebuild when a migration is added
// or changed (cargo does not track the folder by itself).
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
