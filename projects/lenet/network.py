"""LeNet-style network: N Conv2D+MaxPooling blocks, a dense layer and a softmax."""

from __future__ import annotations

from dataclasses import dataclass

INPUT_SIZE = 28
NUM_CLASSES = 10


def max_conv_blocks(size: int = INPUT_SIZE) -> int:
    """Blocks that fit: each 2x2 pooling floors the side, which must stay at least 1."""
    blocks = 0
    while size // 2 >= 1:
        size //= 2
        blocks += 1
    return blocks


@dataclass(frozen=True)
class Architecture:
    conv_blocks: int
    filters: int
    dense_units: int
    dropout: float


def learning_rate_at(epoch: int, learning_rate: float, lr_decay: float) -> float:
    """The rate of 0-based `epoch`, counted from the first epoch of the whole training
    (a run continued from a checkpoint goes on where its base left off): `lr_decay`
    of the rate is lost each epoch; 0 keeps it constant."""
    return learning_rate * (1.0 - lr_decay) ** epoch


def build(arch: Architecture, learning_rate: float):  # -> keras.Model
    import keras
    from keras import layers

    inputs = keras.Input(shape=(INPUT_SIZE, INPUT_SIZE, 1), name="image")
    x = inputs
    for block in range(arch.conv_blocks):
        x = layers.Conv2D(arch.filters * 2**block, 5, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(arch.dense_units, activation="relu")(x)
    if arch.dropout > 0:
        x = layers.Dropout(arch.dropout)(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax", name="digit")(x)
    model = keras.Model(inputs, outputs, name="lenet")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
