//! `clawgate call METHOD`: one request to the gateway, the raw result printed.

use clap::Args;
use serde_json::Value;

use clawgate_client::{ClientError, ResponseFrame};

use super::conn::{self, ConnArgs};
use super::output;

/// Call a gateway method and print its result.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  clawgate call health
  clawgate call status --json
  clawgate call device.pair.list --params '{}'
  clawgate call agent --params '{\"message\":\"hi\",\"idempotencyKey\":\"run-1\"}' --expect-final

Exit status: 0 when the gateway answered ok, 1 when it answered with an error or could not be reached.")]
pub struct CallArgs {
    /// Method name, e.g. health, status, device.pair.list
    pub method: String,
    /// Params as JSON (usually an object)
    #[arg(long, default_value = "{}")]
    pub params: String,
    /// Print one compact JSON line; errors as {"ok":false,"error":{…}}
    #[arg(long)]
    pub json: bool,
    /// When the first answer is {status:"accepted"} (agent), wait for the final one (bounded by --timeout-ms)
    #[arg(long)]
    pub expect_final: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Run `clawgate call`.
pub async fn run(args: CallArgs) -> anyhow::Result<i32> {
    let params: Value = match serde_json::from_str(&args.params) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("clawgate: --params is not valid JSON: {e}");
            return Ok(2);
        }
    };
    let client = conn::connect_default(&args.conn).await?;
    let result = if args.expect_final {
        final_frame(&client, &args.method, params, &args.conn).await
    } else {
        client.request_frame(&args.method, params).await
    };
    client.close().await;
    let frame = result.map_err(|e| anyhow::anyhow!("{} failed: {e}", args.method))?;
    Ok(print_frame(frame, args.json))
}

/// Wait past an `accepted` acknowledgement for the final frame, all of it bounded by `--timeout-ms`.
async fn final_frame(
    client: &clawgate_client::Client,
    method: &str,
    params: Value,
    conn: &ConnArgs,
) -> Result<ResponseFrame, ClientError> {
    let limit = conn.timeout();
    tokio::time::timeout(limit, client.request_final_frame(method, params)).await.unwrap_or_else(|_| {
        Err(ClientError::Timeout { waiting_for: format!("final response to {method}"), after: limit })
    })
}

fn print_frame(frame: ResponseFrame, as_json: bool) -> i32 {
    if frame.ok {
        output::print_json(&frame.payload.unwrap_or(Value::Null), as_json);
        return 0;
    }
    match &frame.error {
        Some(error) => output::print_error(error, as_json),
        None => eprintln!("error: the gateway answered ok:false without an error"),
    }
    1
}
