"""Layer 4, the chapter's applications built on the layers below: translation
(an encoder-decoder), extractive question answering (a span head), the checks that flag
input unlike the training data (``input_checks``), and pretrained weights from local
Hugging Face folders, with generation and sentence embeddings from them (``interop``). The command line, the server and
the demo sit on top (docs/architecture.md).
"""
from . import dpo, question_answering, sft, translation  # noqa: F401,E402  (importing minillm.apps registers their tasks)
