// @ts-check
// The JSON the page reads from the API (functions/segpipe/models), and the page's own shapes.
// Types only: nothing here runs. Other modules import them with `@import`.

/** @typedef {"queued" | "training" | "completed" | "failed" | "stopped"} Status */
/** @typedef {"instance" | "semantic"} ModelType */
/** @typedef {"test" | "train"} Split */

/**
 * @typedef {object} Progress
 * @property {number} epoch
 * @property {number} epochs
 * @property {number | null} [train_loss]
 * @property {number | null} [val_score]
 * @property {"training" | "evaluating" | "done"} [phase]
 */

/** @typedef {"f1" | "precision" | "recall" | "ap50" | "mean_iou"} HeadlineKey */
/** @typedef {{split: string, threshold: number} & Partial<Record<HeadlineKey, number | null>>} Headline */

/**
 * A row of the model table.
 * @typedef {object} ModelSummary
 * @property {string} project
 * @property {number} version
 * @property {string} label
 * @property {Status} status
 * @property {Progress | null} [progress]
 * @property {ModelType} model_type
 * @property {string[]} classes
 * @property {Headline | null} [headline]
 * @property {boolean} active
 * @property {number | null} [analysis_threshold]
 * @property {string} created_at
 */

/** @typedef {{project: string, models: ModelSummary[]}} ModelTable */

/** @typedef {{code: string, message: string, context?: Record<string, unknown>}} Issue */
/** @typedef {{status: Status, at: string, reason?: string | null}} StatusChange */
/** @typedef {{name: string, annotations: number, train: number, test: number, images: number}} ClassCounts */

/**
 * @typedef {object} IgnoredCounts
 * @property {Record<string, number>} [excluded_classes]
 * @property {number} [unfinished_images]
 * @property {number} [invalid_annotations]
 * @property {number} [images_held_out]
 */

/** @typedef {{instance_type: string, spot: boolean, hours: number, cost_usd: number}} Estimate */

/**
 * @typedef {object} TrainingDetails
 * @property {string} [dataset]
 * @property {number} [total_images]
 * @property {number} [included_images]
 * @property {number} [train_images]
 * @property {number} [test_images]
 * @property {number} [included_annotations]
 * @property {ClassCounts[]} [classes]
 * @property {IgnoredCounts} [ignored]
 * @property {number | null} [tile_size]
 * @property {number | null} [epochs]
 * @property {string | null} [preset]
 * @property {Estimate | null} [estimate]
 */

/** @typedef {{strategy?: "none" | "fraction" | "images", fraction?: number, seed?: number, images?: string[]}} TestSet */

/**
 * One version: its request, training details, status and thresholds.
 * @typedef {ModelSummary & {
 *   dataset?: string,
 *   request?: {test_set?: TestSet},
 *   details?: TrainingDetails,
 *   warnings?: Issue[],
 *   status_history?: StatusChange[],
 *   failure_reason?: string | null,
 *   suggested_threshold?: number | null,
 *   started_at?: string | null,
 *   ended_at?: string | null,
 * }} ModelVersion
 */

/**
 * @typedef {"precision" | "recall" | "f1" | "panoptic_quality" | "mean_matched_iou" | "iou" | "dice"
 *   | "pixel_accuracy" | "tp" | "fp" | "fn" | "predicted_objects"} MetricKey
 */
/** @typedef {Partial<Record<MetricKey, number | null>>} Metrics */
/** @typedef {{threshold: number, overall: Metrics, per_class?: Record<string, Metrics>}} ThresholdPoint */
/** @typedef {"ap50" | "ap"} ApKey */
/** @typedef {Partial<Record<ApKey, number | null>>} AveragePrecision */

/**
 * @typedef {object} SplitMetrics
 * @property {number} images
 * @property {number} objects
 * @property {ThresholdPoint} at
 * @property {AveragePrecision | null} [ap_overall]
 * @property {Record<string, AveragePrecision>} [ap_per_class]
 * @property {ThresholdPoint[] | null} [sweep]
 */

/** @typedef {{estimate?: number | null, low?: number | null, high?: number | null}} Interval */
/** @typedef {MetricKey | ApKey} IntervalKey */
/** @typedef {{threshold: number, metrics: Partial<Record<IntervalKey, Interval>>}} ThresholdIntervals */

/**
 * Bootstrap confidence intervals of one split's metrics (resampling its images).
 * @typedef {object} Bootstrap
 * @property {Split} split
 * @property {string} [method]
 * @property {number} draws
 * @property {number} seed
 * @property {number} confidence 0.95 for 95 %
 * @property {number} images images in the split (and in each resample)
 * @property {ThresholdIntervals} headline at the suggested threshold
 * @property {ThresholdIntervals[]} [sweep] at every threshold, for the plot's bands
 */

/**
 * How the epochs and thresholds were chosen (never on the test set).
 * @typedef {object} Selection
 * @property {"holdout" | "refit" | "none"} method
 * @property {string[]} [validation_images]
 * @property {number} [validation_groups]
 * @property {"validation" | "config"} [epochs_from]
 * @property {number | null} [chosen_epoch]
 * @property {number} [final_images]
 * @property {number} [final_epochs]
 * @property {"validation" | "train"} [threshold_from]
 * @property {Record<string, "validation" | "train">} [thresholds_from]
 * @property {string} [summary] one sentence for people
 */

/**
 * @typedef {object} MetricsView
 * @property {ModelType} model_type
 * @property {string[]} classes
 * @property {number} threshold
 * @property {number | null} suggested_threshold
 * @property {Record<string, number>} [suggested_thresholds]
 * @property {SplitMetrics | null} [train]
 * @property {SplitMetrics | null} [test]
 * @property {Bootstrap | null} [intervals] null for older versions and without a test set
 * @property {Selection | null} [selection] null for older versions
 */

/**
 * An evaluated image as the predictions listing gives it (`renewed` is the page's own mark).
 * @typedef {object} PredictionImage
 * @property {string} file_name
 * @property {string} split
 * @property {string} stem
 * @property {number} width
 * @property {number} height
 * @property {number} objects
 * @property {string | null} [preview_url]
 * @property {string} predictions_url
 * @property {boolean} [renewed]
 */

/** @typedef {{total: number, offset: number, images: PredictionImage[]}} PredictionsPage */
/** @typedef {{split: Split, total: number, images: PredictionImage[]}} ImageList */

/** @typedef {{category: string, score: number, segmentation?: number[][], bbox: number[]}} PredictedObject */
/** @typedef {{width: number, height: number, objects: PredictedObject[]}} ImagePredictions */

/**
 * What the viewer needs of a listed image; the version's and the analysis's listings both have it.
 * @typedef {object} ViewerEntry
 * @property {string} file_name
 * @property {string} stem
 * @property {string | null} [preview_url] when the listing gives it (else the objects' answer does)
 * @property {boolean} [renewed] the page's own mark: its preview URL was asked for again
 */
/** @typedef {{total: number, images: ViewerEntry[]}} ViewerList */

// ---- analyses (functions/segpipe/models/analysis.py)

/** @typedef {"queued" | "running" | "completed" | "failed" | "stopped"} AnalysisStatus */

/**
 * A row of the analyses table (AnalysisRow).
 * @typedef {object} AnalysisRow
 * @property {string} project
 * @property {number} analysis
 * @property {string} name
 * @property {string} images_folder
 * @property {number} version
 * @property {AnalysisStatus} status
 * @property {number} images images in the folder
 * @property {number | null} [images_done] while running: images analysed so far (all hosts)
 * @property {Record<string, number>} [objects] kept objects per class, once done
 * @property {Record<string, number>} thresholds the per-class thresholds used (frozen)
 * @property {string} created_at
 * @property {string | null} [ended_at]
 */

/** @typedef {{objects: number, area: number, area_um2?: number | null}} ClassTotals */

/**
 * The merged `summary.json` of a completed analysis (AnalysisSummary).
 * @typedef {object} AnalysisSummary
 * @property {number} version
 * @property {string[]} classes
 * @property {Record<string, number>} thresholds
 * @property {number | null} [pixel_size]
 * @property {number} images
 * @property {number} [megapixels]
 * @property {number} objects
 * @property {Record<string, ClassTotals>} [per_class]
 * @property {string[]} [hosts]
 * @property {number} [seconds]
 */

/**
 * One analysis (AnalysisView): the row plus what was run, its summary and its outputs.
 * @typedef {AnalysisRow & {
 *   model_type: ModelType,
 *   classes: string[],
 *   pixel_size?: number | null,
 *   warnings?: Issue[],
 *   failure_reason?: string | null,
 *   status_history?: {status: AnalysisStatus, at: string, reason?: string | null}[],
 *   summary?: AnalysisSummary | null,
 *   outputs?: Record<string, string>,
 *   job_name: string,
 *   details?: {images?: number, megapixels?: number, estimate?: Estimate | null},
 * }} AnalysisView
 */

/**
 * An analysed image as the images listing gives it (AnalysedImageEntry: a row of images.csv).
 * @typedef {ViewerEntry & {
 *   width?: number, height?: number, objects?: number, counts?: Record<string, number>,
 *   objects_url?: string, mask_url?: string | null,
 * }} AnalysisImageEntry
 */

/**
 * `GET .../analyses/{n}/images/{stem}`: the kept objects of one image (AnalysedImage) and URLs.
 * @typedef {ImagePredictions & {
 *   file_name: string, stem: string, channels?: number, counts?: Record<string, number>,
 *   preview_url?: string | null, mask_url?: string | null,
 * }} AnalysedImage
 */

export {};
