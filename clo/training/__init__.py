"""Training: the run driver, CLO's trainer and its config, sampling and collation, answer log-probs, the
reference cache, the objectives, which parameters train, callbacks, stopping and the distributed helpers."""
