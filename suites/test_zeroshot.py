"""Zero-shot classification and image-text retrieval, for encoders with a text tower (CLIP).

An ``--encoder=open_clip:ARCH/WEIGHTS`` or ``--encoder=hf:DIR`` of a CLIP or SigLIP reads text
with its own text tower and tokenizer; any
Encoder implementing ``encode_text(texts)`` in the space of ``embed`` does too. Other encoders
skip these tests, saying so.

- ``zeroshot.top1`` / ``top5`` on the label datasets: each class is the re-normalised mean of
  its prompts' normalised text embeddings (CLIP's prompt ensembles: CLIP_benchmark's templates
  per dataset, ImageNet's 80 otherwise, "a photo of a {c}." on the embedded datasets); each test
  image goes to the class of highest cosine. No training, so chance is the majority share.
- ``retrieval.image_to_text_r{1,5,10}`` / ``text_to_image_r{1,5,10}`` on a captioned dataset
  (COCO captions; offline, the shapes scenes described by their generator).
"""

import pytest


@pytest.mark.visprobe_probe("zeroshot")
def test_zeroshot(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.run("zeroshot", visprobe_encoder, visprobe_dataset)


@pytest.mark.visprobe_probe("retrieval")
def test_retrieval(visprobe, visprobe_encoder, visprobe_dataset):
    visprobe.run("retrieval", visprobe_encoder, visprobe_dataset)
