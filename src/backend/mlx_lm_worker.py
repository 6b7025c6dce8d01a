# soakd's mlx-lm worker: runs the mlx_lm library for soakd, talking JSON lines over stdin and
# stdout. The protocol (version 1) is documented in src/backend/mlx_lm.rs; soakd embeds this
# file and sends it as the first line on stdin (a JSON string) to a `python -c` bootstrap, so an
# installed soakd needs no file of its own. Usage: python -c BOOTSTRAP MODEL_FOLDER
import json
import math
import os
import platform
import queue
import sys
import threading
import time

PROTOCOL = 1
# At most 12 bytes a character once JSON-escaped: a done line stays under soakd's 1 MiB.
MAX_TEXT_CHARS = 65536
MAX_ERROR_CHARS = 4096


def main():
    model_path = sys.argv[1] if len(sys.argv) > 1 else ""
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    lock = threading.Lock()

    def send(obj):
        # JSON has no NaN or infinity: a number that is not finite is sent as null.
        for key, value in obj.items():
            if isinstance(value, float) and not math.isfinite(value):
                obj[key] = None
        line = json.dumps(obj) + "\n"
        with lock:
            try:
                out.write(line)
                out.flush()
            except (BrokenPipeError, OSError):
                os._exit(0)

    try:
        import mlx.core as mx
        import mlx_lm
        from mlx_lm import load, stream_generate
        from mlx_lm.sample_utils import make_sampler
    except Exception as e:  # noqa: BLE001 - any import failure is reported, then fatal
        send({"t": "fatal", "error": "cannot import mlx_lm: %s: %s" % (type(e).__name__, e)})
        out.flush()
        os._exit(3)

    def mx_fn(name):
        f = getattr(mx, name, None)
        if f is None:
            f = getattr(getattr(mx, "metal", None), name, None)
        return f

    get_active, get_peak = mx_fn("get_active_memory"), mx_fn("get_peak_memory")
    get_cache, reset_peak = mx_fn("get_cache_memory"), mx_fn("reset_peak_memory")

    def memory():
        m = {}
        for key, f in (("active_bytes", get_active), ("peak_bytes", get_peak), ("cache_bytes", get_cache)):
            try:
                m[key] = int(f()) if f is not None else None
            except Exception:  # noqa: BLE001
                m[key] = None
        return m

    send({
        "t": "hello",
        "v": PROTOCOL,
        "pid": os.getpid(),
        "python": platform.python_version(),
        "mlx": getattr(mx, "__version__", None),
        "mlx_lm": getattr(mlx_lm, "__version__", None),
        "device": str(mx.default_device()),
        "model": model_path,
    })

    jobs = queue.Queue()
    cancelled = set()

    def reader():
        for line in sys.stdin:
            try:
                msg = json.loads(line)
            except ValueError:
                send({"t": "error", "id": None, "error": "soakd sent a line that is not JSON"})
                continue
            if not isinstance(msg, dict):
                continue
            if msg.get("op") == "cancel":
                with lock:
                    cancelled.add(msg.get("id"))
                continue
            jobs.put(msg)
        jobs.put(None)

    def is_cancelled(rid):
        with lock:
            return rid in cancelled

    threading.Thread(target=reader, daemon=True).start()

    state = {"model": None, "tokenizer": None}

    def generate(msg, rid, t0):
        model, tokenizer = state["model"], state["tokenizer"]
        messages = msg.get("messages") or []
        if getattr(tokenizer, "has_chat_template", False):
            prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        else:
            prompt = "\n\n".join(str(m.get("content", "")) for m in messages)
        temp, top_p = msg.get("temperature"), msg.get("top_p")
        sampler = make_sampler(temp=float(temp or 0.0), top_p=float(top_p or 0.0))
        stream = bool(msg.get("stream", True))
        if reset_peak is not None:
            reset_peak()
        parts, tail, last, first = [], "", None, None
        count, finish = 0, None
        for r in stream_generate(model, tokenizer, prompt, max_tokens=int(msg.get("max_tokens") or 1), sampler=sampler):
            if is_cancelled(rid):
                finish = "cancelled"
                break
            last = r
            # Every response is one generated token, except a final one ended by EOS, whose
            # text is only what the detokenizer still held.
            if r.finish_reason == "stop":
                tail = r.text
            else:
                count += 1
                if first is None:
                    first = time.perf_counter()
                if stream:
                    send({"t": "tok", "id": rid, "text": r.text})
                else:
                    parts.append(r.text)
            if r.finish_reason is not None:
                finish = r.finish_reason
        end = time.perf_counter()
        done = {
            "t": "done",
            "id": rid,
            "finish_reason": finish or "length",
            "completion_tokens": count,
            # soakd keeps 64 KiB of a reply and reads lines of at most 1 MiB: send no more.
            "text": ("".join(parts) + tail)[:MAX_TEXT_CHARS],
            "ttft_ms": (first - t0) * 1000.0 if first is not None else None,
            "total_ms": (end - t0) * 1000.0,
        }
        if last is not None:
            done["prompt_tokens"] = int(last.prompt_tokens)
            done["prompt_tps"] = float(last.prompt_tps)
            done["generation_tps"] = float(last.generation_tps)
        done.update(memory())
        send(done)

    while True:
        msg = jobs.get()
        if msg is None:
            break
        op, rid = msg.get("op"), msg.get("id")
        if op == "stats":
            send(dict({"t": "stats", "id": rid, "loaded": state["model"] is not None}, **memory()))
            continue
        if op != "generate":
            send({"t": "error", "id": rid, "error": "unknown op %r" % (op,)})
            continue
        if is_cancelled(rid):
            send({"t": "done", "id": rid, "finish_reason": "cancelled", "completion_tokens": 0, "text": ""})
            continue
        t0 = time.perf_counter()
        if state["model"] is None:
            try:
                state["model"], state["tokenizer"] = load(model_path)
            except Exception as e:  # noqa: BLE001 - a model that cannot load ends the worker
                err = "cannot load the model: %s: %s" % (type(e).__name__, e)
                send({"t": "fatal", "id": rid, "error": err[:MAX_ERROR_CHARS]})
                out.flush()
                os._exit(3)
            send(dict({"t": "loaded", "id": rid, "load_ms": (time.perf_counter() - t0) * 1000.0}, **memory()))
        try:
            generate(msg, rid, t0)
        except Exception as e:  # noqa: BLE001 - a failed generation is reported; the worker lives on
            send({"t": "error", "id": rid, "error": ("%s: %s" % (type(e).__name__, e))[:MAX_ERROR_CHARS]})
    out.flush()
    os._exit(0)


main()
