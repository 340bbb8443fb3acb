//! The operations of the OpenAPI document the code generates: what the role matrix and the
//! documentation tests walk.

use reqwest::Method;
use serde_json::Value;

/// One operation: its method, path template and the roles its security names (none: public).
pub struct Operation {
    pub method: Method,
    pub path: String,
    pub roles: Vec<String>,
}

pub fn documented() -> Vec<Operation> {
    let doc: Value =
        serde_json::from_str(&statusads::http::openapi::document().to_json().unwrap()).unwrap();
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            // A path item also holds `parameters`, `summary` and the like.
            let method = match method.as_str() {
                "get" => Method::GET,
                "post" => Method::POST,
                "put" => Method::PUT,
                "patch" => Method::PATCH,
                "delete" => Method::DELETE,
                _ => continue,
            };
            let roles = operation["security"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|requirement| requirement["bearer"].as_array().cloned())
                .flatten()
                .filter_map(|role| role.as_str().map(str::to_owned))
                .collect();
            operations.push(Operation {
                method,
                path: path.clone(),
                roles,
            });
        }
    }
    operations
}
