"""render_assets: the render worker of the landscape-design web app, as a Dagster asset pipeline."""
