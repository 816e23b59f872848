//! Prints the generated OpenAPI document (`cargo run -p sundial-web --example openapi`).

fn main() {
    let doc = sundial_web::api::openapi::document();
    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
}
