use anyhow::Context;
use predict_api::config::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    airq_runtime::init_tracing("info,sqlx=warn");
    let settings = Settings::load().context("loading configuration")?;
    let listener = tokio::net::TcpListener::bind(&settings.server.addr)
        .await
        .with_context(|| format!("binding {}", settings.server.addr))?;
    predict_api::serve(settings, listener, airq_runtime::shutdown_token()).await
}
