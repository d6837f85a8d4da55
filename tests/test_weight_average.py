"""Weight averaging during training: validation and checkpoints see the moving average, training goes on from
the raw weights."""

import numpy as np

from huse_edge._tf import keras
from huse_edge.train import WeightAverage


class Recorder(keras.callbacks.Callback):
    """The weights after every step, at every epoch start and at every validation."""

    def __init__(self):
        super().__init__()
        self.steps, self.epoch_starts, self.validated = [], [], []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(self.model.get_weights())

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_starts.append(self.model.get_weights())

    def on_test_begin(self, logs=None):
        self.validated.append(self.model.get_weights())


def test_validation_sees_the_moving_average_and_training_resumes_from_the_raw_weights():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    recorder = Recorder()
    momentum = 0.6
    model.fit(x, y, batch_size=8, epochs=3, validation_data=(x, y), shuffle=False, verbose=0,
              callbacks=[WeightAverage(momentum), recorder])

    average = [w.copy() for w in recorder.epoch_starts[0]]
    expected = []
    for step, weights in enumerate(recorder.steps, start=1):
        decay = min(momentum, (1 + step) / (10 + step))
        average = [decay * a + (1 - decay) * w for a, w in zip(average, weights)]
        if step % 4 == 0:
            expected.append(average)
    assert len(recorder.validated) == 3
    for seen, wanted, raw in zip(recorder.validated, expected, recorder.steps[3::4]):
        for s, w, r in zip(seen, wanted, raw):
            np.testing.assert_allclose(s, w, rtol=1e-5, atol=1e-6)
            assert not np.allclose(s, r, atol=1e-4)  # the average, not the last step's weights
    for start, raw in zip(recorder.epoch_starts[1:], recorder.steps[3::4]):
        for s, r in zip(start, raw):
            np.testing.assert_array_equal(s, r)
    for final, wanted in zip(model.get_weights(), expected[-1]):  # the average is what training leaves behind
        np.testing.assert_allclose(final, wanted, rtol=1e-5, atol=1e-6)
