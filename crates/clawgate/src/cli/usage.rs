//! `clawgate usage`: tokens and cost of the recorded turns, by day or by agent, model, provider
//! or session (`usage.cost`).

use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use clawgate_client::ClientError;
use clawgate_protocol::methods::names;

use super::conn::{self, ConnArgs};
use super::output;

/// What the rows of the table are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum By {
    /// One row per day with turns.
    Day,
    /// One row per agent.
    Agent,
    /// One row per provider/model.
    Model,
    /// One row per provider.
    Provider,
    /// One row per session key.
    Session,
}

impl By {
    fn as_str(self) -> &'static str {
        match self {
            By::Day => "day",
            By::Agent => "agent",
            By::Model => "model",
            By::Provider => "provider",
            By::Session => "session",
        }
    }
}

/// Show token usage and cost of the gateway's agent turns.
#[derive(Debug, Args)]
#[command(after_help = "Costs use the prices in the config (models.providers.<id>.models[].cost, USD per
million tokens); a model without a price shows its tokens and \"n/a\" for cost.

Examples:
  clawgate usage                          # the last 30 days, one row per day
  clawgate usage --days 7 --by model      # what each model cost this week
  clawgate usage --by agent --agent ops   # one agent only
  clawgate usage --from 2026-03-01 --to 2026-03-31 --by session
  clawgate usage --json | jq '.totals.totalCost'")]
pub struct UsageArgs {
    /// The last N days, today included
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3660), conflicts_with_all = ["from", "to"])]
    pub days: u64,
    /// First day (YYYY-MM-DD, UTC), with --to
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// Last day (YYYY-MM-DD, UTC), with --from
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Rows by day, agent, model, provider or session
    #[arg(long, value_enum, default_value_t = By::Day)]
    pub by: By,
    /// Only this agent's turns (default: every agent)
    #[arg(long)]
    pub agent: Option<String>,
    /// Print the gateway's answer (usage.cost) as one compact JSON line
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Run `clawgate usage`.
pub async fn run(args: UsageArgs) -> anyhow::Result<i32> {
    let params = params(&args);
    let client = conn::connect_default(&args.conn).await?;
    let result = client.request(names::USAGE_COST, params).await;
    client.close().await;
    let payload = match result {
        Ok(v) => v,
        Err(ClientError::Rpc(error)) => {
            output::print_error(&error, args.json);
            return Ok(1);
        }
        Err(e) => return Err(anyhow::anyhow!("usage.cost failed: {e}")),
    };
    if args.json {
        output::print_json(&payload, true);
    } else {
        println!("{}", render(&payload, args.by, args.agent.as_deref()));
    }
    Ok(0)
}

fn params(args: &UsageArgs) -> Value {
    let mut p = match (&args.from, &args.to) {
        (Some(from), Some(to)) => json!({"startDate": from, "endDate": to}),
        _ => json!({"days": args.days}),
    };
    match &args.agent {
        Some(agent) => p["agentId"] = json!(agent),
        None => p["agentScope"] = json!("all"),
    }
    if args.by != By::Day {
        p["groupBy"] = json!(args.by.as_str());
    }
    p
}

/// The table: a heading, one row per day (with turns) or group, a total row, and the models
/// that have no price.
fn render(payload: &Value, by: By, agent: Option<&str>) -> String {
    let who = agent.map_or_else(|| "all agents".to_owned(), |a| format!("agent {a}"));
    let mut out = vec![format!(
        "Usage {} … {} ({} days, {who})",
        output::str_field(payload, "startDate"),
        output::str_field(payload, "endDate"),
        payload.get("days").and_then(Value::as_u64).unwrap_or(0)
    )];
    let entries: Vec<(String, &Value)> = match by {
        By::Day => payload
            .get("daily")
            .and_then(Value::as_array)
            .map(|days| {
                days.iter()
                    .filter(|d| count(d, "turns") > 0)
                    .map(|d| (output::str_field(d, "date").to_owned(), d))
                    .collect()
            })
            .unwrap_or_default(),
        _ => payload
            .get("groups")
            .and_then(Value::as_array)
            .map(|groups| groups.iter().map(|g| (output::str_field(g, "key").to_owned(), g)).collect())
            .unwrap_or_default(),
    };
    let label = by.as_str().to_uppercase();
    let header = [label.as_str(), "TURNS", "INPUT", "OUTPUT", "CACHE READ", "CACHE WRITE", "TOKENS", "COST"];
    let mut rows: Vec<Vec<String>> = entries.iter().map(|(key, e)| row(key, e)).collect();
    if rows.is_empty() {
        out.push("No turns recorded in this range.".to_owned());
        return out.join("\n");
    }
    let totals = payload.get("totals").unwrap_or(&Value::Null);
    rows.push(row("TOTAL", totals));
    out.push(output::table(&header, &rows));
    if let Some(missing) = totals.get("missingCostByModel").and_then(Value::as_object).filter(|m| !m.is_empty()) {
        let named: Vec<String> = missing.iter().map(|(model, n)| format!("{model} ({n} turns)")).collect();
        out.push(format!(
            "No price for: {} — set models.providers.<id>.models[].cost to price them.",
            named.join(", ")
        ));
    }
    if payload.get("truncated").and_then(Value::as_bool) == Some(true) {
        out.push("The range holds more sums than one answer carries: ask for fewer days.".to_owned());
    }
    out.join("\n")
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn row(key: &str, t: &Value) -> Vec<String> {
    let mut cells = vec![key.to_owned()];
    for field in ["turns", "input", "output", "cacheRead", "cacheWrite", "totalTokens"] {
        cells.push(count(t, field).to_string());
    }
    cells.push(cost_cell(t));
    cells
}

/// `$0.0120`, `$0.0120 + 2 unpriced`, or `n/a` when no turn of the row has a price.
fn cost_cell(t: &Value) -> String {
    let turns = count(t, "turns");
    let missing = count(t, "missingCostEntries");
    let cost = t.get("totalCost").and_then(Value::as_f64).unwrap_or(0.0);
    if turns > 0 && missing >= turns {
        "n/a".to_owned()
    } else if missing > 0 {
        format!("${cost:.4} + {missing} unpriced")
    } else {
        format!("${cost:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(turns: u64, input: u64, cost: f64, missing: u64) -> Value {
        json!({"turns": turns, "input": input, "output": 1, "cacheRead": 0, "cacheWrite": 0,
               "totalTokens": input + 1, "totalCost": cost, "missingCostEntries": missing})
    }

    #[test]
    fn a_day_table_lists_days_with_turns_a_total_and_the_unpriced_models() {
        let mut total = totals(3, 30, 0.012, 1);
        total["missingCostByModel"] = json!({"beta/m2": 1});
        let payload = json!({
            "startDate": "2026-03-01", "endDate": "2026-03-03", "days": 3,
            "daily": [
                {"date": "2026-03-01", "turns": 0, "totalCost": 0, "missingCostEntries": 0},
                {"date": "2026-03-02", "turns": 2, "input": 20, "output": 1, "cacheRead": 0, "cacheWrite": 0,
                 "totalTokens": 21, "totalCost": 0.012, "missingCostEntries": 0},
                {"date": "2026-03-03", "turns": 1, "input": 10, "output": 0, "cacheRead": 0, "cacheWrite": 0,
                 "totalTokens": 10, "totalCost": 0, "missingCostEntries": 1},
            ],
            "totals": total,
        });
        let text = render(&payload, By::Day, None);
        let want = "Usage 2026-03-01 … 2026-03-03 (3 days, all agents)
DAY         TURNS  INPUT  OUTPUT  CACHE READ  CACHE WRITE  TOKENS  COST
2026-03-02  2      20     1       0           0            21      $0.0120
2026-03-03  1      10     0       0           0            10      n/a
TOTAL       3      30     1       0           0            31      $0.0120 + 1 unpriced
No price for: beta/m2 (1 turns) — set models.providers.<id>.models[].cost to price them.";
        assert_eq!(text, want);
    }

    #[test]
    fn params_ask_for_every_agent_unless_one_is_named() {
        let args = UsageArgs {
            days: 7,
            from: None,
            to: None,
            by: By::Model,
            agent: None,
            json: false,
            conn: ConnArgs { url: String::new(), token: None, password: None, state_dir: None, timeout_ms: 1 },
        };
        assert_eq!(params(&args), json!({"days": 7, "agentScope": "all", "groupBy": "model"}));
        let args = UsageArgs {
            agent: Some("ops".into()),
            by: By::Day,
            from: Some("2026-03-01".into()),
            to: Some("2026-03-02".into()),
            ..args
        };
        assert_eq!(params(&args), json!({"startDate": "2026-03-01", "endDate": "2026-03-02", "agentId": "ops"}));
    }
}
