//! Input data: CIFAR-10/100 binary readers, normalisation, minibatches, synthetic inputs.
