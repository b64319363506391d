//! The JS handlers, the wrk Lua script and the request body the benchmarks use.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// The hello-world module handler, identical for every runtime.
pub const HELLO_JS: &str = r#"export default { fetch() { return new Response("Hello, world!"); } };
"#;

/// The body the hello-world handler answers with.
pub const HELLO_BODY: &str = "Hello, world!";

/// The "realistic" module handler: parses a JSON order, computes totals, answers JSON.
pub const REALISTIC_JS: &str = r#"// Realistic handler: parse a JSON order, compute totals, answer JSON.
export default {
  async fetch(request, env, ctx) {
    if (request.method !== "POST") {
      return new Response("method not allowed", { status: 405, headers: { allow: "POST" } });
    }
    let order;
    try {
      order = await request.json();
    } catch (e) {
      return new Response("invalid JSON", { status: 400 });
    }
    const items = Array.isArray(order.items) ? order.items : [];
    let total = 0;
    let count = 0;
    let max = 0;
    for (const item of items) {
      const line = Number(item.price) * Number(item.qty);
      total += line;
      count += 1;
      if (line > max) max = line;
    }
    const body = JSON.stringify({ user: order.user, total, count, max });
    return new Response(body, {
      headers: {
        "content-type": "application/json",
        "cache-control": "no-store",
        "x-request-total": String(total),
      },
    });
  },
};
"#;

/// Number of line items in the realistic request body.
pub const ORDER_ITEMS: u32 = 20;

/// The order the realistic benchmark POSTs, and the answer the handler must give.
#[derive(Debug, Clone)]
pub struct Order {
    /// The JSON request body.
    pub body: String,
    /// Sum of price * qty over the items.
    pub total: f64,
    /// Largest price * qty of one item.
    pub max: f64,
}

impl Order {
    /// Builds the fixed order: 20 items whose prices are exact binary fractions,
    /// so every runtime computes the same total to the bit.
    pub fn fixed() -> Self {
        let mut items = Vec::new();
        let mut total = 0.0;
        let mut max: f64 = 0.0;
        for id in 1..=ORDER_ITEMS {
            let price = 0.5 + 0.25 * f64::from(id);
            let qty = 1 + id % 4;
            let line = price * f64::from(qty);
            total += line;
            max = max.max(line);
            items.push(serde_json::json!({ "id": id, "price": price, "qty": qty }));
        }
        let body = serde_json::json!({ "items": items, "user": "u1" }).to_string();
        Self { body, total, max }
    }

    /// Checks a response body of the realistic handler against the expected totals.
    pub fn check_response(&self, body: &str) -> Result<()> {
        let v: serde_json::Value = serde_json::from_str(body)
            .with_context(|| format!("response is not JSON: {body:?}"))?;
        let total = v["total"]
            .as_f64()
            .context("response has no numeric `total`")?;
        let max = v["max"].as_f64().context("response has no numeric `max`")?;
        let count = v["count"]
            .as_u64()
            .context("response has no numeric `count`")?;
        anyhow::ensure!(
            v["user"] == "u1",
            "response user is {}, want \"u1\"",
            v["user"]
        );
        anyhow::ensure!(
            (total - self.total).abs() < 1e-9,
            "response total {total}, want {}",
            self.total
        );
        anyhow::ensure!(
            (max - self.max).abs() < 1e-9,
            "response max {max}, want {}",
            self.max
        );
        anyhow::ensure!(
            count == u64::from(ORDER_ITEMS),
            "response count {count}, want {ORDER_ITEMS}"
        );
        Ok(())
    }

    /// The wrk Lua script that POSTs this order as JSON.
    pub fn wrk_script(&self) -> String {
        format!(
            "-- POST the realistic order as JSON.\n\
             wrk.method = \"POST\"\n\
             wrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.body = [==[{}]==]\n",
            self.body
        )
    }
}

/// The files written into the temporary directory.
#[derive(Debug, Clone)]
pub struct HandlerFiles {
    /// hello.js
    pub hello: PathBuf,
    /// realistic.js
    pub realistic: PathBuf,
    /// post.lua, the wrk script for the realistic benchmark.
    pub post_lua: PathBuf,
    /// The order the realistic benchmark sends.
    pub order: Order,
}

impl HandlerFiles {
    /// Writes the handlers and the wrk script into `dir`.
    pub fn write(dir: &Path) -> Result<Self> {
        let order = Order::fixed();
        let hello = dir.join("hello.js");
        let realistic = dir.join("realistic.js");
        let post_lua = dir.join("post.lua");
        write_file(&hello, HELLO_JS)?;
        write_file(&realistic, REALISTIC_JS)?;
        write_file(&post_lua, &order.wrk_script())?;
        Ok(Self {
            hello,
            realistic,
            post_lua,
            order,
        })
    }
}

/// Writes `contents` to `path`, naming the path on failure.
pub fn write_file(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_round_trips() -> Result<()> {
        let order = Order::fixed();
        let v: serde_json::Value = serde_json::from_str(&order.body)?;
        let items = v["items"].as_array().context("items")?;
        assert_eq!(items.len(), 20);
        let answer = serde_json::json!({
            "user": "u1", "total": order.total, "count": 20, "max": order.max
        });
        order.check_response(&answer.to_string())?;
        assert!(
            order
                .check_response(r#"{"user":"u1","total":1,"count":20,"max":1}"#)
                .is_err()
        );
        assert!(order.wrk_script().contains("wrk.method = \"POST\""));
        Ok(())
    }
}
