"""The Playground: any prompt and settings, streamed step by step, with a stop button and downloads."""

import io

import numpy as np
import streamlit as st
from PIL import Image

from frontend import trajectory
from frontend.client import RECONNECT_DELAYS_S, StudentError, get_client
from frontend.views import PREVIEW_NOTE, enlarge, guarded, plain
from services.common.api import pb

SAFETY_NOTE = "The safety filter flagged this picture, so it is shown blurred. Try a different prompt."

SOURCES = {
    pb.TRAJECTORY_SOURCE_COMPUTED: "The model is computing it for you.",
    pb.TRAJECTORY_SOURCE_JOINED: "A classmate asked for exactly this a moment ago: you are watching the same run.",
    pb.TRAJECTORY_SOURCE_CACHE: "Someone asked for exactly this before: it comes from the cache, instantly.",
}


def gif(run: trajectory.TrajectoryView) -> bytes:
    """The denoising as an animated GIF: the model's guess at every step, then the decoded image."""
    size = run.image.shape[1]
    frames = [Image.fromarray(enlarge(s.x0_preview, size)) for s in run.steps if s.x0_preview is not None]
    frames.append(Image.fromarray(run.image))
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=120, loop=0)
    return buffer.getvalue()


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


st.title("Playground")
info = guarded(get_client().model_info)
if info is None:
    st.stop()
limits = info.limits
sizes = [s for s in range(max(limits.min_size, 64), limits.max_size + 1, 64)]

with st.form("settings"):
    prompt = st.text_area(
        "Prompt", "a cozy reading nook with a cat, warm afternoon light", max_chars=limits.max_prompt_chars
    )
    negative = st.text_input("Negative prompt (optional)", "")
    a, b, c = st.columns(3)
    steps = a.slider("Steps", limits.min_steps, min(limits.max_steps, 100), info.default_steps)
    guidance = b.slider(
        "Guidance scale", 0.0, float(limits.max_guidance_scale), float(info.default_guidance_scale), 0.5
    )
    display = {s.name: s.display_name for s in info.schedulers}
    names = list(display)
    scheduler = c.selectbox("Scheduler", names, index=names.index(info.default_scheduler), format_func=display.get)
    d, e, f = st.columns(3)
    width = d.selectbox("Width", sizes, index=sizes.index(info.default_width) if info.default_width in sizes else 0)
    height = e.selectbox("Height", sizes, index=sizes.index(info.default_height) if info.default_height in sizes else 0)
    seed = f.number_input("Seed (empty: a random one)", 0, int(limits.max_seed), value=None, step=1)
    submitted = st.form_submit_button("Generate", type="primary")

stop = st.button("Stop")
if stop and st.session_state.get("running"):
    st.session_state.running = False
    st.info("You stopped the generation.")

if submitted:
    request = pb.GenerateRequest(
        prompt=prompt, negative_prompt=negative, num_inference_steps=steps, guidance_scale=guidance,
        width=width, height=height, scheduler=scheduler,
    )  # fmt: skip
    if seed is not None:
        request.seed = int(seed)
    request.include.paths.extend(["latent_preview", "predicted_x0_preview"])
    st.session_state.running = True
    status, progress = st.empty(), st.progress(0.0, text="Waiting for the image server…")
    left, right = st.columns(2)
    left_image, right_image = left.empty(), right.empty()
    try:

        def reconnecting(attempt: int, pause: float) -> None:
            status.warning(
                f"The image server went away (it may be restarting). Reconnecting in {pause:.0f} s "
                f"(attempt {attempt} of {len(RECONNECT_DELAYS_S)})…",
                icon=":material/sync:",
            )

        for run, response in trajectory.stream(request, on_reconnect=reconnecting):
            kind = response.WhichOneof("event")
            if kind == "status":
                status.info(SOURCES.get(run.source, ""))
            elif kind == "queue":
                ahead = run.queue.position - 1
                status.info(
                    "You are next: the GPU starts on your picture as soon as a place is free."
                    if ahead == 0
                    else f"Waiting for the GPU: {ahead} picture(s) ahead of yours."
                )
            elif kind == "header":
                status.info(SOURCES.get(run.source, ""))
            elif kind == "frame":
                step = run.steps[-1]
                progress.progress(len(run.steps) / run.total_steps, text=f"Step {len(run.steps)} of {run.total_steps}")
                left_image.image(enlarge(step.latent_preview, 320), caption="the noisy latent x_t (preview)")
                right_image.image(enlarge(step.x0_preview, 320), caption="the model's guess of x0 (preview)")
        st.session_state.result = run
    except StudentError as error:
        st.error(str(error), icon=":material/error:")
    finally:
        st.session_state.running = False

run = st.session_state.get("result")
if run is not None and run.image is not None:
    st.subheader(f"“{plain(run.request.prompt)}”, seed {run.request.seed}")
    step = st.slider("Look back at any step", 1, len(run.steps), len(run.steps), key="playground-step")
    a, b, c = st.columns(3)
    a.image(enlarge(run.steps[step - 1].latent_preview, 256), caption=f"x_t after step {step}")
    b.image(enlarge(run.steps[step - 1].x0_preview, 256), caption=f"guess of x0 at step {step}")
    c.image(run.image, caption="the decoded image", width=256)
    if run.flagged:
        st.warning(SAFETY_NOTE, icon=":material/visibility_off:")
    st.caption(PREVIEW_NOTE)
    d, e = st.columns(2)
    d.download_button("Download the image (PNG)", png(run.image), "diffusion-classroom.png", "image/png")
    e.download_button("Download the denoising (GIF)", gif(run), "diffusion-classroom.gif", "image/gif")
