//! Which names control accepts for functions, secrets and nodes.

use outpost_proto::names::is_identifier;
use outpost_proto::names::is_plain_name;
use outpost_proto::names::shorten;

use crate::error::ControlError;

/// Longest function name (it appears in routes, logs and URLs).
const MAX_FUNCTION_NAME: usize = 63;

/// Longest secret name.
const MAX_SECRET_NAME: usize = 128;

/// Longest node display name.
const MAX_NODE_NAME: usize = 128;

/// Function names: 1 to 63 of `[A-Za-z0-9_-]`.
pub(crate) fn check_function_name(name: &str) -> Result<(), ControlError> {
    if is_plain_name(name, MAX_FUNCTION_NAME) {
        Ok(())
    } else {
        Err(ControlError::BadRequest(format!(
            "invalid function name {:?}: use 1 to {MAX_FUNCTION_NAME} letters, digits, `_` or `-`",
            shorten(name)
        )))
    }
}

/// Secret names: JavaScript identifiers (ASCII), as they appear on `env`.
pub(crate) fn check_secret_name(name: &str) -> Result<(), ControlError> {
    if is_identifier(name, MAX_SECRET_NAME) {
        Ok(())
    } else {
        Err(ControlError::BadRequest(format!(
            "invalid secret name {:?}: use a JavaScript identifier (letters, digits, `_`, `$`; not starting with a digit)",
            shorten(name)
        )))
    }
}

/// Node display names: 1 to 128 printable characters.
pub(crate) fn check_node_name(name: &str) -> Result<(), ControlError> {
    let ok = !name.trim().is_empty()
        && name.chars().count() <= MAX_NODE_NAME
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(ControlError::BadRequest(format!(
            "invalid node name {:?}: use 1 to {MAX_NODE_NAME} printable characters",
            shorten(name)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names() {
        for good in ["a", "api", "my_fn-2", &"x".repeat(63)] {
            assert!(check_function_name(good).is_ok(), "{good:?}");
        }
        for bad in ["", "a b", "a/b", "ü", "a.b", &"x".repeat(64)] {
            assert!(check_function_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secret_names_are_js_identifiers() {
        for good in ["TOKEN", "_x", "$y", "api_key2"] {
            assert!(check_secret_name(good).is_ok(), "{good:?}");
        }
        for bad in ["", "2x", "a-b", "a b", "a.b"] {
            assert!(check_secret_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn node_names() {
        assert!(check_node_name("pop-1 (fra)").is_ok());
        assert!(check_node_name(" ").is_err());
        assert!(check_node_name("a\nb").is_err());
    }
}
