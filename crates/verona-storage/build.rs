// `sqlx::migrate!` embeds migration files but cannot tell Cargo about new
// ones; without this a freshly added migration would be silently missing.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
