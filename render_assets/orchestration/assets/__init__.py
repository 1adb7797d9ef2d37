from render_assets.orchestration.assets.render import cdn_image, qa_verdict, raw_render, render_prompt

RENDER_ASSETS = [render_prompt, raw_render, qa_verdict, cdn_image]

__all__ = ["RENDER_ASSETS", "cdn_image", "qa_verdict", "raw_render", "render_prompt"]
