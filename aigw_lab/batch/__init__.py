"""Batch submission: many chat requests sent as one provider batch job, at the batch price.

OpenAI (Files + Batches API) and Anthropic (Message Batches API) run a batch within 24 hours
for half the normal token price. `submit_batch` encodes each request with the provider's own
codec (the same body a chat call would send), submits the job and returns a `BatchJob`;
`BatchJob.results` decodes every answer with that codec, maps per-request errors into the
`aigw_lab.errors` tree, and logs one call-log row per request::

    job = submit_batch(gw, "openai/gpt-4o-mini", ["What is 2 + 2?", "Name a prime."])
    saved = job.to_dict()                     # keep it: a notebook can reconnect later
    job = BatchJob.resume(gw, saved)          # ... after a kernel restart
    job.wait(poll_interval=60)
    answers = job.results()                   # ChatResponse | AigwError, in input order

Requests go straight to the provider's API with the gateway's key and headers; the gateway's
middleware (caches, limits, budgets, retries) does not apply to a batch.
"""

from aigw_lab.batch.apis import BATCH_KINDS
from aigw_lab.batch.job import BATCH_DISCOUNT, BATCH_TAG, BatchJob, submit_batch

__all__ = ["submit_batch", "BatchJob", "BATCH_KINDS", "BATCH_DISCOUNT", "BATCH_TAG"]
